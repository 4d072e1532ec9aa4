cimport cython


cdef class LocalCounter:
    cdef public object child
    cdef public Py_ssize_t n

    cpdef inc(self)


cdef class LocalHistogram:
    cdef public object child
    cdef public tuple bounds
    cdef public list counts
    cdef public double total
    cdef public bint dirty

    cpdef observe(self, double value)


cdef class RouteMetrics:
    cdef public object route
    cdef public dict _count
    cdef public dict _dur

    @cython.locals(c=LocalCounter, h=LocalHistogram)
    cpdef observe(self, str method, int status, double seconds)
