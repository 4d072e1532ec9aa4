from wxgated.http.client cimport UpstreamConnection
from wxgated.http.message cimport Request, Response


cpdef Response client_response(int status, list upstream_headers, UpstreamConnection conn)


cdef class Proxy:
    cdef public object upstream
    cdef public bint preserve_host
    cdef public object upgrade
    cdef public object read_timeout
    cdef public object timeout

    cpdef start(self, Request req, flow)


cdef class Call:
    cdef public Proxy proxy
    cdef public Request req
    cdef public object flow
    cdef public object uri
    cdef public object lines
    cdef public object host
    cdef public object target
    cdef public double start
    cdef public object deadline
