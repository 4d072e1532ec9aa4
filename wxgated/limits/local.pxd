cimport cython

from wxgated.limits.gcra cimport gcra


cdef class LocalStore:
    cdef public object rate
    cdef public Py_ssize_t max_keys
    cdef public dict _tats
    cdef public tuple _params

    @cython.locals(now=cython.longlong, tat=cython.longlong, new_tat=cython.longlong,
                   tats=dict)
    cpdef tuple decide(self, key)
