package activity

import (
	"strings"

	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
)

// What a relevant operation type changes, as the hint's reason to refresh
// the customer. Every class asks for the same thing — a targeted refresh of
// the customer (its listings; get-by-id for the subscriptions the record
// names) — the class only documents why the type is in the table.
const (
	ClassCustomer     = "customer"     // the customer object (companyProfile, billingProfile, relationship)
	ClassSubscription = "subscription" // a subscription's properties
	ClassOrder        = "order"        // an order, i.e. new or changed subscriptions
	ClassLicense      = "license"      // license assignment (seats in use)
	ClassRelationship = "relationship" // partner–customer relationship: the customer, its managed services
	ClassTransfer     = "transfer"     // subscriptions moved between partners
)

// relevant is the one table of the operation types that name a change to
// something pcwatch watches (customers, subscriptions, managed services,
// products), chosen from the types "Auditing resources" documents
// (pc.AuditOperationTypes). A record of another documented type is
// counted as irrelevant, one of an undocumented type as unknown; neither
// is an error. A false entry costs one targeted refresh, a missing one
// leaves the change to the sweep.
//
// Documented types left out on purpose: customer users and their
// passwords, qualifications and spending budgets (not in the customer
// listing), partner users, applications and credentials, MPN
// associations, self-serve policies, referrals, software keys and
// downloads, spending limits, invoices, agreements, credits, devices and
// policies, GDAP access assignments (roles, not the relationship),
// partner-level relationships (create/remove_partner_relationship,
// extend_relationship: no customer), Azure fraud events, overage.
var relevant = map[string]string{
	pc.AuditOpAddCustomer:                           ClassCustomer,
	pc.AuditOpUpdateCustomerBillingProfile:          ClassCustomer,
	"update_customer_partner_contract_company_name": ClassCustomer,
	pc.AuditOpDeleteCustomer:                        ClassCustomer,
	"delete_tip_customer":                           ClassCustomer,

	pc.AuditOpUpdateSubscription:       ClassSubscription,
	pc.AuditOpUpgradeSubscription:      ClassSubscription,
	pc.AuditOpConvertTrialSubscription: ClassSubscription,

	pc.AuditOpCreateOrder: ClassOrder,
	pc.AuditOpUpdateOrder: ClassOrder,

	pc.AuditOpUpdateCustomerUserLicenses: ClassLicense,
	"update_sfb_customer_user_licenses":  ClassLicense,

	pc.AuditOpRemovePartnerCustomerRelationship:      ClassRelationship,
	"dap_admin_relationship_approved":                ClassRelationship,
	"dap_admin_relationship_terminated":              ClassRelationship,
	"dap_admin_relationship_terminated_by_microsoft": ClassRelationship,
	"granular_admin_relationship_approved":           ClassRelationship,
	"granular_admin_relationship_activated":          ClassRelationship,
	"granular_admin_relationship_terminated":         ClassRelationship,
	"granular_admin_relationship_expired":            ClassRelationship,

	"create_transfer": ClassTransfer,
	"update_transfer": ClassTransfer,
}

// RelevantOperations returns the table of relevant operation types: type
// to class (a copy).
func RelevantOperations() map[string]string {
	out := make(map[string]string, len(relevant))
	for k, v := range relevant {
		out[k] = v
	}
	return out
}

// classify returns the class of op (compared case-insensitively), or the
// skip reason: SkipUnknownOperation for a type Partner Center does not
// document, SkipIrrelevant for a documented one outside the table.
func classify(op string) (class, skip string) {
	op = strings.ToLower(strings.TrimSpace(op))
	if c, ok := relevant[op]; ok {
		return c, ""
	}
	if pc.KnownAuditOperationType(op) {
		return "", SkipIrrelevant
	}
	return "", SkipUnknownOperation
}
