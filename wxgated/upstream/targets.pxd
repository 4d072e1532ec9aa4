from wxgated.http.client cimport ConnectionPool, UpstreamConnection
from wxgated.http.message cimport Body
from wxgated.observe.metrics cimport LocalCounter, LocalHistogram


cdef class Target:
    cdef public object upstream
    cdef public object key
    cdef public object weight
    cdef public bint tls
    cdef public object host
    cdef public object port
    cdef public bytes host_header
    cdef public ConnectionPool pool
    cdef public Py_ssize_t active
    cdef public object health
    cdef public object breaker
    cdef public object failure_statuses
    cdef public object failure_errors
    cdef public dict _status_children

    cpdef count(self, status)


cdef class Exchange:
    cdef public object status
    cdef public list headers
    cdef public UpstreamConnection conn
    cdef public Target target


cpdef bytes with_body(bytes head, Body body, bytes data)


cdef class Upstream:
    cdef public object name
    cdef public list targets
    cdef public object balancer
    cdef public double connect_timeout
    cdef public double read_timeout
    cdef public object retry
    cdef public object budget
    cdef public object checker
    cdef public LocalHistogram duration
    cdef public object rebalance
    cdef public object watcher
    cdef public object discovered
    cdef object __weakref__  # discovered targets bind their upstreams weakly
