"""Agora media tokens: AccessToken2 ("007", ours) and legacy AccessToken ("006", via the library).

The rest of the server uses :class:`server.agora.issuer.MediaTokens` only.
"""
