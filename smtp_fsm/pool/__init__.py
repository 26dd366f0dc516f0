"""Connection pools over the drivers: ``AsyncSMTPPool`` (asyncio) and ``SMTPPool`` (threads).

The decisions are sans-IO: per message in ``ledger`` (what goes again, when, what is final), per
connection in ``connection`` (wait, connect, send or QUIT); each pool only waits, connects and calls
``send_many``.
"""
