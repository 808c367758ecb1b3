"""Which websockets a revoked API token or a logged-out session opened: each of them is told, nothing else."""

from __future__ import annotations

import uuid

from backend.lib.revocations import CredentialSockets


async def test_revoking_a_token_sets_the_event_of_each_of_its_sockets_only() -> None:
    sockets = CredentialSockets()
    revoked, kept = uuid.uuid4(), uuid.uuid4()
    with sockets.watch(revoked) as first, sockets.watch(revoked) as second, sockets.watch(kept) as other:
        sockets.revoke(revoked)
        assert (first.is_set(), second.is_set(), other.is_set()) == (True, True, False)


async def test_a_socket_watched_just_after_its_token_was_revoked_is_told_at_once() -> None:
    sockets = CredentialSockets()
    token_id = uuid.uuid4()
    sockets.revoke(token_id)  # the revocation arrives between the socket's admission and its watch
    with sockets.watch(token_id) as revoked:
        assert revoked.is_set()


async def test_only_the_most_recent_revocations_are_kept() -> None:
    sockets = CredentialSockets(recent=2)
    oldest, middle, newest = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for token_id in (oldest, middle, newest):
        sockets.revoke(token_id)
    with sockets.watch(oldest) as a, sockets.watch(middle) as b, sockets.watch(newest) as c:
        assert (a.is_set(), b.is_set(), c.is_set()) == (False, True, True)


async def test_a_session_and_a_token_of_the_same_user_are_told_apart() -> None:
    sockets = CredentialSockets()
    token_id, session = uuid.uuid4(), "5e55" * 16
    with sockets.watch(token_id) as by_token, sockets.watch(session) as by_session:
        sockets.revoke(session)
        assert (by_token.is_set(), by_session.is_set()) == (False, True)
