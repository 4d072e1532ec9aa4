cimport cython


@cython.locals(base=cython.longlong, new_tat=cython.longlong, allow_at=cython.longlong)
cpdef tuple gcra(long long tat, long long now, long long interval, long long tolerance,
                 long long burst)
