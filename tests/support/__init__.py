"""What the tests share: fixtures for real servers and simulators, fakes, waiting."""
