"""On-chain delivery of the holder share of platform revenue.

Framework-free on purpose: nothing here imports Django. Callers (the Django
delivery service, management commands, tests) pass configuration in explicitly.

Modules:
    contracts/HolderReserve.vy  the reserve contract (Vyper 0.4.3)
    artifacts                   the committed compiled artifact and its loader
    compile                     ``python -m revenue.chain.compile [--check]``
    client                      connecting, signing, deploying, delivery primitives
    errors                      the exception family and ``classify_error``
    units                       ``usd_to_wei``
    runtime                     the one Django-aware module: settings and ChainDeployment
                                rows -> the worker's node, signer and contract
"""
