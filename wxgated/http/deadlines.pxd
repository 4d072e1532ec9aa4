cimport cython

cdef class Timed:
    cdef public double deadline
    cdef public long bucket
    cpdef on_deadline(self)


cdef class Deadlines:
    cdef public double resolution
    cdef public dict buckets
    cdef list _due
    cdef object _handle
    cdef long _when
    cdef object _loop

    @cython.locals(idx=long, members=set)
    cpdef arm(self, Timed obj, double deadline)
    @cython.locals(members=set)
    cpdef forget(self, Timed obj)
    cdef _set_timer(self, long idx)
