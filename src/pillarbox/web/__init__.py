"""The web interface: webmail, account settings, admin, JSON API and client autoconfig.

Build it with :func:`pillarbox.web.app.create_app`; ``pillarbox serve`` runs one app on the "http"
and "https" listeners (:mod:`pillarbox.net.http`).
"""
