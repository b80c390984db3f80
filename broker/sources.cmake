# Library sources of broker/ (none yet).
