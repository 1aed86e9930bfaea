"""Test support shipped with the package: live servers, transcripts, the storage contract suite."""
