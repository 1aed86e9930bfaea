"""Sans-I/O SMTP: replies, extensions, grammar, the server role (SMTP and LMTP) and the client
role. Nothing here touches sockets, TLS or clocks; ``pillarbox.net`` drives these cores."""
