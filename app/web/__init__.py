"""The operations-centre web app (Chinese): server-rendered pages, a little JS, all served locally."""
