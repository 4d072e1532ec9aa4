cdef class Body:
    cdef public object length
    cdef public object _feeder
    cdef public object _buffered

    cpdef object arrived(self)


cdef class Request:
    cdef public object method
    cdef public object path
    cdef public object query
    cdef public object headers
    cdef public object version
    cdef public bint keep_alive
    cdef public object scheme
    cdef public object client_ip
    cdef public object peer_ip
    cdef public object trace_id
    cdef public object params
    cdef public object route
    cdef public object claims
    cdef public Body body
    cdef public object ctx
    cdef public double start
    cdef public object upstream
    cdef public object target
    cdef public double upstream_ms
    cdef public object host
    cdef public object transport
    cdef public object orig_path
    cdef public object trace_hex
    cdef public object plain_target
    cdef public object reason
    cdef public object flow
    cdef public object added


cdef class Response:
    cdef public object status
    cdef public object headers
    cdef public object body
    cdef public object stream
    cdef public object upgrade
    cdef public object no_framing
    cdef public object error
