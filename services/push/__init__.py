"""Web Push (RFC 8030, 8291, 8292): waking the phones of a ring group on a doorbell press.

A phone registers its browser push subscription with a door station in a signed message
(``push_subscribe``); the door keeps it (:mod:`~services.push.store`) and, when its doorbell
rings the phone among others, sends it an encrypted push signed with the site's VAPID key
(:mod:`~services.push.sender`). The push only wakes the phone: the call still comes as a
signed invite once the page has connected.
"""
