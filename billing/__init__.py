"""Money: ledger operations, metering arithmetic, Stripe purchases, payouts.

Billing sees no wire types and no sockets; it talks to ``storage`` only and
reports balance changes through a callback the server installs.
"""
