//! The template's wiring around the functions: HTTP API routes, SQS event source mappings, schedules.
