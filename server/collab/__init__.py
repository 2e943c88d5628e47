"""Collaborative prompt sessions: a shared CRDT document, members and roles, renders.

``service.CollabService`` is what handlers and sockets call; ``documents`` holds the
document's shape and each process's live copy, ``protocol`` the y-protocols encoding,
``store`` the persisted updates, ``sessions`` membership, ``renders`` the strip.
"""
