from wxgated.http.message cimport Request
from wxgated.upstream.targets cimport Target, Upstream


cpdef tuple timeouts(Upstream up, read_timeout)
cpdef double try_timeout(double timeout, deadline, double now)
cpdef bytes request_head(str method, bytes uri, bytes host, bytes lines)
cpdef settle(Upstream up, Request req, Target target, status, error, double start)
cpdef bint retry_next(Upstream up, str method, int attempt, status, error, bint replayable,
                      deadline)
cpdef Target admit(Upstream up, Request req, tried)
cpdef record_verdict(Target target, status, error, double now)
