"""Sans-I/O IMAP: framing (``lexer``), grammar (``parser``, ``commands``, ``search``, ``fetch``,
``sequence``, ``mutf7``, ``dates``) and responses (``responses``). No sockets, no clock."""
