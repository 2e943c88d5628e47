"""HTTP and WebSocket handlers: parse, authorise, call a service, render."""
