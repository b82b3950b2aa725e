"""The web page to try the service (`/`): static HTML, JavaScript and CSS, no build step.

`static/` holds the files as served (`app.api.routes.web` serves them from memory); the page
talks to the service's own JSON API only (see README, Web page).
"""
