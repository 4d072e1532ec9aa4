cimport cython


@cython.locals(size=Py_ssize_t, name=bytes, value=bytes)
cpdef Py_ssize_t fields_size(list raw)
@cython.locals(headers=list, hosts=Py_ssize_t, listed=bint, size=Py_ssize_t, name=bytes,
               value=bytes)
cpdef list head_fields(list raw, str version, Py_ssize_t room, bint allow_underscores=*)
