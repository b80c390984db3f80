# Library sources of client/ (none yet).
