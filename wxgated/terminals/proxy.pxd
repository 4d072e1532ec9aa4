from wxgated.http.client cimport UpstreamConnection
from wxgated.http.headers cimport forward_target, request_block, response_headers
from wxgated.http.message cimport Request, Response
from wxgated.upstream.forward cimport (
    admit,
    request_head,
    retry_next,
    settle,
    timeouts,
    try_timeout,
)
from wxgated.upstream.targets cimport Target, Upstream, with_body


cpdef Response client_response(int status, list upstream_headers, UpstreamConnection conn)


cdef class Proxy:
    cdef public Upstream upstream
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
    cdef public Target target
    cdef public double start
    cdef public object deadline
