"""The peers of bench/fanout.py: the servers a Python or Node team would write instead.

Each is a small server in this folder, run in an environment of its own that the benchmark
installs under bench/.build/peers (never the project's venv): ``websockets`` (asyncio, uvloop,
redis.asyncio), Node ``ws`` with ioredis, and Django Channels over channels-redis' pub/sub
layer served by uvicorn. bench/README.md says how they are run and compared.
"""
