"""Channel policy as pure functions: customer matching, registrations, conflicts, routing."""
