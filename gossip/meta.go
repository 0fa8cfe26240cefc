package gossip

// Node meta and pings: what a member tells the others about itself beside
// its records. The meta (memberlist's NodeMeta, at most 512 bytes) carries
// the wire features the member understands and the fingerprints of its
// gossip keys; the ping ack carries its clock, so every member learns the
// others' clock offsets from the probes it sends anyway.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"
)

// Wire features a member announces in its meta. A sender uses a feature
// only when every member it knows announces it, so members of an older
// version (no meta at all) never receive what they would refuse.
const (
	// featureOrigin: the member decodes records with an origin time
	// (recFlagOrigin).
	featureOrigin uint64 = 1 << 0
	// featureDigest: the member takes a Digest as push/pull state and
	// answers Want (digest.go).
	featureDigest uint64 = 1 << 1

	ourFeatures = featureOrigin | featureDigest

	metaFormat = 1
	// maxMetaKeys bounds the fingerprints in a meta: 8 of 23 bytes fit
	// well inside memberlist's 512.
	maxMetaKeys = 8
)

// nodeMeta is a member's decoded meta.
type nodeMeta struct {
	features uint64
	keys     []string // key fingerprints, the encrypting key first
}

// meta = format:u8(=1) features:uvarint nkeys:uvarint fingerprint:str*
func encodeMeta(m nodeMeta) []byte {
	b := []byte{metaFormat}
	b = appendUvarint(b, m.features)
	keys := m.keys[:min(len(m.keys), maxMetaKeys)]
	b = appendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(b, k)
	}
	return b
}

// decodeMeta reads a member's meta; an empty one (a member of a version
// before meta) is no features and unknown keys.
func decodeMeta(b []byte) (nodeMeta, error) {
	var m nodeMeta
	if len(b) == 0 {
		return m, nil
	}
	r := reader{b: b}
	if v := r.byte(); r.err == nil && v != metaFormat {
		return m, fmt.Errorf("node meta: unknown format %d", v)
	}
	m.features = r.uvarint(^uint64(0))
	n := r.uvarint(maxMetaKeys)
	for i := uint64(0); i < n && r.err == nil; i++ {
		m.keys = append(m.keys, r.string())
	}
	if err := r.end(); err != nil {
		return nodeMeta{}, fmt.Errorf("node meta: %w", err)
	}
	if m.keys == nil {
		m.keys = []string{}
	}
	return m, nil
}

// ownMeta is this member's meta: its features and, with encryption on and
// Config.Fingerprint set, its keys' fingerprints.
func (c *Cluster) ownMeta() nodeMeta {
	m := nodeMeta{features: ourFeatures}
	if c.keyring == nil || c.cfg.Fingerprint == nil {
		return m
	}
	primary := c.keyring.GetPrimaryKey()
	m.keys = []string{c.cfg.Fingerprint(primary)}
	for _, k := range c.keyring.GetKeys() {
		if string(k) != string(primary) {
			m.keys = append(m.keys, c.cfg.Fingerprint(k))
		}
	}
	return m
}

// KeyFingerprints are the fingerprints of this member's gossip keys, the
// encrypting one first (nil without encryption or Config.Fingerprint).
func (c *Cluster) KeyFingerprints() []string { return c.ownMeta().keys }

// originOKLocked says whether every other member this host knows decodes
// origin times; records are sent with them only then. c.mu held.
func (c *Cluster) originOKLocked() bool {
	for name, m := range c.members {
		if name != c.cfg.Name && m.meta.features&featureOrigin == 0 {
			return false
		}
	}
	return true
}

// pinger is Cluster seen as memberlist's PingDelegate: each probe's ack
// carries the target's clock, and the prober keeps the offset.
type pinger Cluster

// AckPayload implements memberlist.PingDelegate: this host's clock, Unix
// nanoseconds, big-endian.
func (p *pinger) AckPayload() []byte {
	return binary.BigEndian.AppendUint64(nil, uint64((*Cluster)(p).now().UnixNano()))
}

// NotifyPingComplete implements memberlist.PingDelegate: the other clock
// read its time about half a round trip before the ack arrived, so its
// offset is payload − (now − rtt/2).
// Every answer also feeds the heal watch (heal.go).
func (p *pinger) NotifyPingComplete(other *memberlist.Node, rtt time.Duration, payload []byte) {
	c := (*Cluster)(p)
	c.healOnAck(other)
	off, err := clockOffset(payload, c.now(), rtt)
	if err != nil {
		c.log.Debug("ping ack payload", "member", other.Name, "err", err)
		return
	}
	c.mu.Lock()
	if m := c.members[other.Name]; m != nil {
		m.clockOffset, m.clockKnown = off, true
	}
	c.mu.Unlock()
}

// clockOffset is the other clock minus ours from an ack payload received
// at now after a round trip of rtt.
func clockOffset(payload []byte, now time.Time, rtt time.Duration) (time.Duration, error) {
	if len(payload) != 8 {
		return 0, errors.New("not a clock: " + fmt.Sprint(len(payload)) + " bytes")
	}
	theirs := int64(binary.BigEndian.Uint64(payload))
	mid := now.Add(-rtt / 2).UnixNano()
	return time.Duration(theirs - mid), nil
}
