"""Services, storage and the application factory of Visionary Art."""
