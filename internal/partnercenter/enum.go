package partnercenter

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Partner Center serialises enumerations inconsistently: "monthly" and
// "Annual", "one_time" and "OneTime", "Active" and "active". Each enum type
// below keeps the value exactly as received (an unknown value is kept, never
// an error) and compares through Is, which ignores case, '_', '-' and spaces.

// normEnum folds an enum value for comparison.
func normEnum(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_' || c == '-' || c == ' ':
			continue
		case 'A' <= c && c <= 'Z':
			b.WriteByte(c + ('a' - 'A'))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// EnumEqual reports whether two enum spellings name the same value.
func EnumEqual(a, b string) bool {
	if a == b {
		return true
	}
	return normEnum(a) == normEnum(b)
}

// unmarshalEnum accepts a JSON string, null, or a bare number or boolean
// (kept as its text), so an enum never fails a decode.
func unmarshalEnum(b []byte) (string, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		return "", nil
	}
	if b[0] == '"' {
		var s string
		err := json.Unmarshal(b, &s)
		return s, err
	}
	if b[0] == '{' || b[0] == '[' {
		// Not an enum at all; keep the text rather than fail the entity.
		return string(b), nil
	}
	return string(b), nil
}

// SubscriptionStatus is a subscription's lifecycle state.
type SubscriptionStatus string

// Documented subscription statuses.
const (
	StatusActive    SubscriptionStatus = "active"
	StatusSuspended SubscriptionStatus = "suspended"
	StatusDeleted   SubscriptionStatus = "deleted"
	StatusExpired   SubscriptionStatus = "expired"
	StatusDisabled  SubscriptionStatus = "disabled"
	StatusPending   SubscriptionStatus = "pending"
	StatusNone      SubscriptionStatus = "none"
)

// Is reports whether s names the same status as o, in any casing.
func (s SubscriptionStatus) Is(o SubscriptionStatus) bool { return EnumEqual(string(s), string(o)) }

// UnmarshalJSON keeps any value as received.
func (s *SubscriptionStatus) UnmarshalJSON(b []byte) error {
	v, err := unmarshalEnum(b)
	*s = SubscriptionStatus(v)
	return err
}

// BillingCycle is how often a subscription is billed.
type BillingCycle string

// Documented billing cycles.
const (
	BillingCycleNone      BillingCycle = "none"
	BillingCycleMonthly   BillingCycle = "monthly"
	BillingCycleAnnual    BillingCycle = "annual"
	BillingCycleTriennial BillingCycle = "triennial"
	BillingCycleOneTime   BillingCycle = "one_time"
	BillingCycleUnknown   BillingCycle = "unknown"
)

// Is reports whether c names the same cycle as o, in any casing.
func (c BillingCycle) Is(o BillingCycle) bool { return EnumEqual(string(c), string(o)) }

// UnmarshalJSON keeps any value as received.
func (c *BillingCycle) UnmarshalJSON(b []byte) error {
	v, err := unmarshalEnum(b)
	*c = BillingCycle(v)
	return err
}

// BillingType is how a subscription is charged.
type BillingType string

// Documented billing types.
const (
	BillingTypeNone    BillingType = "none"
	BillingTypeUsage   BillingType = "usage"
	BillingTypeLicense BillingType = "license"
)

// Is reports whether t names the same billing type as o, in any casing.
func (t BillingType) Is(o BillingType) bool { return EnumEqual(string(t), string(o)) }

// UnmarshalJSON keeps any value as received.
func (t *BillingType) UnmarshalJSON(b []byte) error {
	v, err := unmarshalEnum(b)
	*t = BillingType(v)
	return err
}

// ContractType distinguishes subscriptions from product keys and redemption codes.
type ContractType string

// Documented contract types.
const (
	ContractTypeSubscription   ContractType = "subscription"
	ContractTypeProductKey     ContractType = "product_key"
	ContractTypeRedemptionCode ContractType = "redemption_code"
)

// Is reports whether t names the same contract type as o, in any casing.
func (t ContractType) Is(o ContractType) bool { return EnumEqual(string(t), string(o)) }

// UnmarshalJSON keeps any value as received.
func (t *ContractType) UnmarshalJSON(b []byte) error {
	v, err := unmarshalEnum(b)
	*t = ContractType(v)
	return err
}

// RelationshipToPartner is a customer's relationship to the signed-in partner.
type RelationshipToPartner string

// Documented relationships.
const (
	RelationshipNone     RelationshipToPartner = "none"
	RelationshipReseller RelationshipToPartner = "reseller"
	RelationshipAdvisor  RelationshipToPartner = "advisor"
)

// Is reports whether r names the same relationship as o, in any casing.
func (r RelationshipToPartner) Is(o RelationshipToPartner) bool {
	return EnumEqual(string(r), string(o))
}

// UnmarshalJSON keeps any value as received.
func (r *RelationshipToPartner) UnmarshalJSON(b []byte) error {
	v, err := unmarshalEnum(b)
	*r = RelationshipToPartner(v)
	return err
}
