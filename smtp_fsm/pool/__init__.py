"""Connection pools over the drivers: ``AsyncSMTPPool`` (asyncio) and ``SMTPPool`` (threads).

What goes again and what is final is decided in one place, sans-IO (``ledger``); each pool only
waits, connects and calls ``send_many``.
"""
