// Package slots computes Redis Cluster hash slots, and the hash tags that
// spread ids over a fixed number of partitions, each pinned to one slot.
//
// Keys that one script touches must share a slot in a cluster, and so must
// the shard channel it publishes on. Tagging every key and channel of an id
// with its partition's tag does both, and bounds the slots (so the
// subscriber connections) an instance ever uses to the number of
// partitions.
package slots

import "strconv"

// Count is the number of hash slots of a Redis Cluster.
const Count = 16384

// Slot returns the hash slot of key: the CRC16 of its hash tag (the part
// between the first '{' and the next '}', when that part is not empty) or
// of the whole key, modulo Count, as Redis Cluster computes it.
func Slot(key string) int {
	return int(crc16(hashTag(key)) % Count)
}

func hashTag(key string) string {
	for i := 0; i < len(key); i++ {
		if key[i] != '{' {
			continue
		}
		for j := i + 1; j < len(key); j++ {
			if key[j] == '}' {
				if j == i+1 {
					return key // "{}": the whole key
				}
				return key[i+1 : j]
			}
		}
		return key
	}
	return key
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0), the
// checksum Redis Cluster hashes keys with.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// Partitions maps ids to a fixed number of partitions and each partition
// to a hash tag whose slot is spread evenly over the slot space, so that
// the partitions divide evenly among the masters of a cluster (which own
// contiguous ranges of slots).
//
// Which partition an id is in, and each partition's tag, depend only on
// the number of partitions: every instance of a deployment must use the
// same number, and changing it moves every id to other keys.
type Partitions struct {
	tags []string // "{…}", by partition
}

// MaxPartitions bounds NewPartitions' n: one partition per slot at most.
const MaxPartitions = Count

// NewPartitions returns n partitions, 1 <= n <= MaxPartitions. Partition p
// gets the smallest number whose decimal form hashes to slot p*Count/n as
// its tag.
func NewPartitions(n int) Partitions {
	if n < 1 || n > MaxPartitions {
		panic("slots: partitions out of range: " + strconv.Itoa(n))
	}
	// bySlot[s] is the smallest number whose decimal form hashes to s.
	bySlot := make([]int, Count)
	for i := range bySlot {
		bySlot[i] = -1
	}
	left := Count
	for i := 0; left > 0; i++ {
		s := Slot(strconv.Itoa(i))
		if bySlot[s] < 0 {
			bySlot[s] = i
			left--
		}
	}
	ps := Partitions{tags: make([]string, n)}
	for p := range n {
		ps.tags[p] = "{" + strconv.Itoa(bySlot[p*Count/n]) + "}"
	}
	return ps
}

// Len returns the number of partitions.
func (ps Partitions) Len() int { return len(ps.tags) }

// Of returns the partition of id: FNV-1a of its bytes modulo the number of
// partitions.
func (ps Partitions) Of(id string) int {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return int(h % uint32(len(ps.tags)))
}

// Tag returns the hash tag, braces included, of id's partition. A key or
// channel that starts its name's variable part with it lives in the
// partition's slot.
func (ps Partitions) Tag(id string) string { return ps.tags[ps.Of(id)] }

// TagOf returns the hash tag of partition p.
func (ps Partitions) TagOf(p int) string { return ps.tags[p] }
