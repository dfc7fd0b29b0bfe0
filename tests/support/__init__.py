"""Helpers the test suites share; the fixtures in the conftest.py files are thin wrappers over them.

api          the template's functions loaded as Lambda loads them, and `Api`, which calls their routes
             through the local stack's route matcher (local.http_server.match_route)
aws          no real AWS account, moto with the template's resources, the functions' environment
faults       `AwsFaults`: real AWS error codes injected below every store
tls          throwaway certificates for loopback servers
smtp         aiosmtpd servers with `ScriptedHandler`, raw-socket servers that misbehave below SMTP
leaks        checks that nothing (thread, socket) is left behind
outbox       `Outbox`: the moto queue fed to the worker's handler as Lambda feeds it
factories    test data: work orders, SMTP settings bodies, the reminder run's day
steps        requests the tests repeat (save settings, activate an automation, sync, the noon run)
stack        the local stack on free ports, for end-to-end tests
fakes        in-memory fakes of mailer.dal's stores
transports   a TransportPool of memory transports, and scripted failures
"""
