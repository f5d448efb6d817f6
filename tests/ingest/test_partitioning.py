"""Services land on the partition a Java or aiokafka producer gives their key.

Checked against Apache Kafka's own murmur2 vectors (`UtilsTest.testMurmur2`)
and the Java rule `toPositive(murmur2(key)) % partitions`, not against the
function under test.
"""

from __future__ import annotations

import pytest

from detector.ingest.partitioning import partition_of

# Kafka UtilsTest.testMurmur2: key -> Java's signed 32-bit murmur2
KAFKA_MURMUR2 = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    "abc": 479470107,
}


@pytest.mark.parametrize("key, signed", sorted(KAFKA_MURMUR2.items()))
@pytest.mark.parametrize("partitions", [1, 2, 3, 8, 12, 50])
def test_partition_is_kafkas_for_the_published_vectors(key, signed, partitions):
    to_positive = signed & 0x7FFFFFFF
    assert partition_of(key, partitions) == to_positive % partitions


def test_a_known_key_and_count():
    assert partition_of("foobar", 50) == 16
