from twisted.application.service import ServiceMaker

neochat = ServiceMaker(
    "NeoChat",
    "neochat.tap",
    "NeoChat chat server suite: message server (JSON and header dialects), FTP files, UDP calls.",
    "neochat",
)
