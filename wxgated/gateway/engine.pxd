from wxgated.http.message cimport Request, Response


cdef class Pipeline:
    cdef public Py_ssize_t count
    cdef public tuple requests
    cdef public tuple responses
    cdef public tuple dones
    cdef public object terminal
    cdef public object max_body

    cpdef run(self, Request req, sink)


cdef class Flow:
    cdef public Request req
    cdef public Pipeline pipe
    cdef public object sink
    cdef public Py_ssize_t step
    cdef public Py_ssize_t below
    cdef public Response resp

    cpdef run_requests(self, tuple steps)
    cpdef respond(self, Response resp)
    cpdef fail(self, BaseException exc)
    cpdef Response error(self, BaseException exc)
    cpdef Response _error(self, BaseException exc)
    cpdef _response(self, Response resp, Py_ssize_t below)
    cpdef _answer(self, Response resp)
    cpdef done(self, int status)
    cpdef drive(self, work)
    cpdef object _drive(self, coro, then)


cdef class _Driver:
    cdef public object coro
    cdef public object then

    cpdef wait_on(self, yielded)
