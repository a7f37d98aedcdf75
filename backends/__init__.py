"""Kernel tables: numpy (the reference, the living definition of every op), numba (CPU), cuda (numba.cuda)."""
