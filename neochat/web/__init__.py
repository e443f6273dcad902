"""The web client: the JSON dialect over WebSocket, file upload and download
over HTTP, and the single-page chat client, all on one twisted.web site."""
