"""The process lifecycle: start (`run`), the serving gateway of one process (`server`),
the supervisor and its workers, reload on file change, systemd notification, and
what a reload can apply live."""
