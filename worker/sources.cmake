# Library sources of worker/ (none yet).
