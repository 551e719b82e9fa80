"""Process KPIs: pure functions over samples and configuration, unit-tested without I/O."""
