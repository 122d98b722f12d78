"""Helpers the tests share that are not fakes: the headless browser driver."""
