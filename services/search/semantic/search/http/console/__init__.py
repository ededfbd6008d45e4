"""The admin console at /admin/vector-search: server-rendered pages over the servicers.

routes     the pages and actions (overview, explorer, query lab, recommendations,
           migration check, dead letters)
session    sign-in by token into an HttpOnly SameSite=Strict cookie; CSRF checks
jobs       long actions (heal, reindex, replay) in the background, polled by the page
views      what the templates show, computed from the response messages
templates/ Jinja2 (autoescaped); static/ the stylesheet and the one script
"""
