"""The web interface: webmail, account settings, admin, JSON API and client autoconfig.

Build it with :func:`pillarbox.web.app.create_app`; ``pillarbox serve`` runs it on the "http"
listener (:mod:`pillarbox.net.http`).
"""
