"""Moving mail in and out of the store: mbox and Maildir files, a remote IMAP account, backups;
and an account's calendars and contacts, as .ics and .vcf files (:mod:`.ics`, :mod:`.vcf`,
shared with the web's Calendar and Contacts pages).

Everything here writes through the :class:`~pillarbox.store.interface.Store` exactly as IMAP
APPEND does (the same line-ending normalisation, the parse-once metadata, the quota), so an
imported message is indistinguishable from one a client uploaded; an imported event is stored
as a CalDAV PUT stores it (:mod:`pillarbox.calendars`), a card as the Contacts page checks one
(:mod:`pillarbox.addressbook`).
"""
