"""Discovery: which sites can host something, under capacity, latency and sovereignty."""

from isthmus.discovery.query import Candidate, Exclusion, FindQuery, FindResult, find

__all__ = ["Candidate", "Exclusion", "FindQuery", "FindResult", "find"]
