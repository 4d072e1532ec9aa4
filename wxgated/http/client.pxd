from wxgated.http.deadlines cimport Deadlines, Timed


cdef class UpstreamConnection(Timed):
    cdef public ConnectionPool pool
    cdef public object loop
    cdef public object transport
    cdef public object parser
    cdef public bint closed
    cdef public double idle_since
    cdef public double _timeout_value
    cdef public bint write_paused
    cdef public object _drain
    cdef public object status
    cdef public list headers
    cdef public bint head_done
    cdef public bint complete
    cdef public object chunks
    cdef public Py_ssize_t buffered
    cdef public object error
    cdef public object waiter
    cdef public object listener
    cdef public bint got_bytes
    cdef public Py_ssize_t head_bytes
    cdef public bint head_request
    cdef public bint keep_alive
    cdef public bint reading_paused

    cpdef _reset(self)
    cpdef on_deadline(self)
    cpdef _wake(self)
    cpdef _tell(self)
    cpdef _wake_drain(self)
    cpdef _arm(self, double seconds)
    cpdef _disarm(self)
    cpdef begin(self, bint head_request, double read_timeout)
    cpdef expect_answer(self, double timeout)
    cpdef bytes take_body(self)
    cpdef finish(self)
    cpdef abort(self)


cdef class ConnectionPool:
    cdef public object loop
    cdef public object host
    cdef public object port
    cdef public object ssl
    cdef public object server_hostname
    cdef public Py_ssize_t max_idle
    cdef public double idle_timeout
    cdef public list idle
    cdef public bint closing
    cdef public Deadlines deadlines

    cpdef UpstreamConnection take_idle(self)
    cpdef release(self, UpstreamConnection conn)
    cpdef forget(self, UpstreamConnection conn)
