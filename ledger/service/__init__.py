"""The service layer: the application, the unit of work that owns one command, the handlers, the aggregate cache."""
