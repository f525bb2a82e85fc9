"""The command-line tools beside the service: `edge-fer bench`, `edge-fer eval` and `edge-fer doctor`."""
