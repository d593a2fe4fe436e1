// Package pcsim is a deterministic simulator of the Microsoft Partner Center
// REST API (the slice pcwatch polls): customers, their subscriptions, managed
// services and products, with the new-commerce (NCE) lifecycle rules, a
// mutation log that serves as ground truth, and faults on demand.
//
// It is pcwatch's zero-config demo backend and the fixture of every test; the
// chaos suite runs it as a separate process (cmd/pcsim) and drives it through
// the admin API under /admin/.
//
// # Determinism
//
// New builds the dataset from Options.Seed, Options.Customers,
// Options.SubscriptionsPerCustomer and the business clock's reading at New:
// the same four give byte-identical response bodies. Customer i depends only
// on (Seed, i), so the first N customers are the same whatever the count.
// Identifiers created later (AddCustomer, Purchase), RandomMutations and the
// random faults each draw from their own seeded generator, so the same
// sequence of calls against the same clock readings gives the same results.
// Response headers (Date, MS-RequestId when the client sends none) are not
// part of that promise.
//
// # Concurrency
//
// A *Sim is safe for concurrent use: the HTTP handler, the explicit
// operations, RandomMutations, State and Log may be called from any goroutine.
// One mutex guards the dataset and the log; rendering happens under it, the
// network write and any injected latency outside it.
//
// # Time
//
// Business time is Options.Clock. Before serving a request and at the start
// of every operation, the simulator applies every lifecycle transition that
// fell due up to Clock.Now(), in due-time order (ties by subscription creation
// order), each logged with At set to its due time. Options.Wall is a separate
// wall clock used for rate limiting and for Mutation.Wall.
//
// Dates are rendered the way the documentation shows them: creationDate with
// seven fractional digits, commitmentEndDate as the end day at 00:00:00Z and
// commitmentEndDateTime as that day at 23:59:59Z. A term is due to end when
// commitmentEndDateTime has passed, i.e. at 00:00:00Z the next day; a renewed
// term starts at that instant. effectiveStartDate and creationDate never change.
//
// # Subscription kinds
//
// The generated mix contains (see Kind* constants): NCE monthly (P1M) and
// annual (P1Y, monthly or annual billing) OnlineServicesNCE subscriptions,
// NCE 3-year Software (P3Y, triennial), NCE trials (isTrial, P1M, 25 seats),
// legacy license-based subscriptions (GUID offer id, etag, no productType),
// legacy add-ons (parentSubscriptionId and links.parentSubscription), the
// Azure plan (productType Azure, usage-based) and third-party commercial
// marketplace SaaS (unitType "License(s)", isMicrosoftProduct false).
//
// # Lifecycle rules
//
//   - Term end with autoRenewEnabled (and status active): renewed; the
//     commitment end moves forward by the term, an NCE subscription gets a new
//     cancellationAllowedUntilDate (renewal + 168h) and a new billing cycle,
//     and scheduledNextTermInstructions, if set, are applied (offer, quantity,
//     term, billing cycle) and cleared.
//   - Term end without auto-renew, or while suspended: status "expired".
//   - Trial end: with auto-renew the trial converts (isTrial false, the paid
//     offer of the same SKU, a new P1M term and cancellation window);
//     otherwise it expires.
//   - "expired" becomes "disabled" after Lifecycle.ExpiredToDisabled (30 days);
//     "disabled" is removed from listings after Lifecycle.DisabledToRemoved
//     (60 days); a cancelled ("deleted") subscription is removed after
//     Lifecycle.DeletedToRemoved (90 days).
//   - Each refundable seat batch expires at its allowedUntilDateTime
//     (increase + 168h); billingCycleEndDate advances each billing period of
//     an active NCE subscription.
//
// A purchase's seats, like each seat increase, form a refundable batch
// that expires CancellationWindow later. Cancel is allowed for NCE
// subscriptions inside their cancellation window, for trials and marketplace
// SaaS at any time, never for legacy subscriptions or the Azure plan.
//
// Explicit operations enforce the NCE rules and return an error wrapping
// ErrNotAllowed (with a *RuleError carrying a Partner Center code where one is
// documented, e.g. 800090 for a seat decrease outside every refund window),
// ErrNotFound or ErrInvalid.
//
// refundableQuantity: NCE subscriptions (OnlineServicesNCE and Software,
// trials included) always carry it on GET-by-id, as
// {"totalQuantity":0,"details":[]} when no batch is refundable; other kinds
// never do. List items omit it unless Options.IncludeRefundableInList.
//
// # Mutation log
//
// Every change, explicit, random or lifecycle, appends one Mutation. Each
// names one resource; Field/Old/New give the primary property and its
// rendered values (times as the API renders them), and Changed lists every
// top-level JSON property of the GET-by-id rendering that changed (a legacy
// subscription's etag changes with every mutation, so "attributes" appears
// there). Op vocabulary:
//
//	customer.added              a customer was added (New: its JSON)
//	customer.removed            a customer was removed (its subscriptions and
//	                            managed services are logged as removed first)
//	subscription.created        Purchase (New: the subscription's JSON)
//	subscription.removed        RemoveSubscription, customer removal, or the
//	                            lifecycle dropping a disabled/deleted one (Old: its JSON)
//	subscription.quantity       IncreaseSeats / DecreaseSeats (field quantity)
//	subscription.status         Suspend, Reactivate, Cancel (which also turns
//	                            auto-renew off and drops refundable batches),
//	                            expiry, disabling
//	subscription.autorenew      SetAutoRenew (field autoRenewEnabled)
//	subscription.renewed        term renewal (field commitmentEndDate)
//	subscription.trialconverted trial conversion (field isTrial)
//	subscription.friendlyname   Rename (field friendlyName)
//	subscription.scheduled      ScheduleNextTerm / ClearScheduledNextTerm
//	                            (field scheduledNextTermInstructions, JSON or nil)
//	subscription.attention      SetAttentionNeeded (field attentionNeeded)
//	subscription.refundable     a refundable seat batch expired
//	                            (field refundableQuantity, old/new totalQuantity)
//	subscription.billingcycle   billingCycleEndDate advanced
//	subscription.field          SetUnknownField (field: the property name,
//	                            Old/New: raw JSON or nil)
//	managedservice.added        AddManagedService
//	managedservice.removed      RemoveManagedService or customer removal
//
// Cause tells "explicit" (a Go or admin call), "random" (RandomMutations),
// "lifecycle" or "hostile" (an OversizedRule).
//
// # HTTP API
//
// The *Sim is an http.Handler. It serves, GET only (405 otherwise), with a
// required "Authorization: Bearer ..." header:
//
//	/v1/customers?size=N[&seekOperation=Next]  keyset-paged, ordered by id; size 1..500 (default 500,
//	                                           larger clamped); Next needs the MS-ContinuationToken
//	                                           header of links.next (HMAC-protected; forged -> 400)
//	/v1/customers/{id}
//	/v1/customers/{id}/subscriptions[?mpn_id=X]
//	/v1/customers/{id}/subscriptions/{subscriptionId}
//	/v1/customers/{id}/managedservices
//	/v1/customers/{id}/products?targetView=V   Azure, MicrosoftAzure, OnlineServices, Software,
//	                                           SoftwareSubscriptions, AzureReservations[VM|SQL], SaaS;
//	                                           AzureReservationsCosmosDb answers 403 (code 400036)
//	/v1/auditrecords?startDate=&endDate=&size=N&filter=F[&seekOperation=Next]
//	                                           the activity log (see below); Next needs the
//	                                           MS-ContinuationToken header of links.next
//
// Fixed path segments match case-insensitively, customer and subscription
// ids too. Responses carry Content-Type application/json; charset=utf-8, the
// request's MS-CorrelationId, its MS-RequestId (one is generated when
// absent) and a Date from the business clock. Error bodies have the
// documented shape {"code":N,"description":...,"data":[],"source":"PartnerFD"}
// with code a JSON number: 600026 for an unknown customer, 20003 for an
// unknown subscription, 400036 for the forbidden target view, and the HTTP
// status (400, 401, 404, 405, 500, 502, 503) where the documentation gives
// no code. 429 bodies have the documented {"statusCode":429,"message":...}
// shape.
//
// # Activity log
//
// Partner changes append an audit record, served by GET /v1/auditrecords
// as "Get a record of Partner Center activity" documents it. Records
// follow the documented shape and property order (id
// partnerId_customerId_[resource_]operation_ticks, partnerId,
// participants, customerId, customerName, userPrincipalName,
// applicationId, resourceType, resourceOldValue, resourceNewValue,
// operationType, originalCorrelationId, operationDate with seven digits,
// operationStatus "succeeded", customizedData, attributes); resource
// values are JSON documents inside strings with PascalCase property names,
// as in the documented examples. Which mutation writes which record:
//
//	customer.added                  add_customer (customer; PrimaryDomainName, Relationship)
//	customer.removed                remove_partner_customer_relationship (partner_customer_relationship;
//	                                resourceOldValue: the customer; its subscriptions' removals have none)
//	subscription.created            create_order (order; resourceNewValue: the order; OrderId,
//	                                BillingCycle, OfferId-0, SubscriptionId-0, SubscriptionName-0,
//	                                Quantity-0, PartnerOnRecord-0 as documented)
//	subscription.quantity, .autorenew, .friendlyname, .scheduled, .status (explicit or random)
//	                                update_subscription (subscription; old and new values: the
//	                                subscription before and after; SubscriptionId, OfferId,
//	                                SubscriptionName, keys the documentation does not list)
//	subscription.trialconverted     convert_trial_subscription, by Microsoft (applicationId
//	                                FulfillmentService, no user)
//
// Everything else has no record: Microsoft's lifecycle changes (renewals,
// expiry, disabling, refund windows, billing periods), its flags
// (attentionNeeded, undocumented properties), subscriptions that disappear
// from the listing, managed services, refused operations and the hostile
// mode's changes. Explicit changes act as AuditExplicitUser through the
// partner's API application; random ones draw from a pool of users and an
// App-only application (no userPrincipalName).
//
// Queries: startDate and endDate are days (yyyy-mm-dd; the SDKs'
// date-times are accepted, their day counts), both included, compared with
// the UTC day of operationDate. An omitted startDate is 30 days back, an
// omitted endDate the earlier of startDate + 30 days and today. A
// startDate before today - 90 days, an endDate before startDate, a window
// wider than 30 days, a bad size or filter answer 400. filter is
// {"Field","Value","Operator"}: CompanyName, CustomerId or ResourceType
// (the SDK's "Subscription" or the records' "subscription"), with equals,
// substring or starts_with, case-insensitive. Pages are newest first, size
// 1..500 (default 500), with totalCount (the page's items), a
// continuationToken and links.next (/auditrecords?...&seekOperation=Next,
// without /v1 as documented, and the token as its MS-ContinuationToken
// header) while more records match. The token carries the query and a
// cursor (HMAC-protected: forged -> 400); a record written while a client
// pages appears in its next query, not in later pages of this one.
//
// AuditConfig (Options.Audit, SetAudit, /admin/audit) sets the lag (business
// time before a record is visible, fixed per record when written), a loss
// rate, records without id, the cap on retained records (the oldest
// dropped first; DefaultAuditMaxRecords), or turns the log off. Records
// older than 90 days are dropped. AuditLog (/admin/audit/records) lists
// every retained record with its visibility instant and the Mutation.Seq
// of its change.
//
// # Webhooks
//
// The registration API (/webhooks/v1/registration and its events and
// validationEvents, one registration per partner) and signed callbacks:
// commerce-level subscription changes (created, quantity, status,
// autorenew, renewed, trialconverted, scheduled; any cause but hostile)
// send subscription-updated, customer.added sends
// reseller-relationship-accepted-by-customer, each to the registered URL if
// it registered the event, signed with Options.WebhookSigner (see
// webhook.go for the certificate URL). WebhookConfig (Options.Webhooks,
// SetWebhooks, /admin/webhooks) sets the delay (wall time), a loss rate
// (seeded), the attempts and the retry delay, or turns callbacks off;
// WebhookLog (/admin/webhooks/deliveries) lists finished deliveries with
// the Mutation.Seq they announce; DrainWebhooks waits for the queue.
//
// # Faults
//
// SetFaults and Inject configure failures of the /v1 API (never of /admin/).
// They are decided before authentication, in this order: latency (waited
// out with Options.Sleep), the rate limiter, the inject queue, a failing
// customer page, connection reset, random 5xx; malformed and truncated
// bodies then apply to 200 responses. Random faults draw from a generator
// seeded by Options.Seed.
//
// # Hostile mode
//
// SetHostile (POST /admin/hostile) switches on answers a real Partner
// Center should never give, the inputs of issue 11 that a client must
// survive without a false removal, a leaked credential or unbounded memory.
// It lives in the simulator itself (not a separate fault server) so that
// every hostile answer is scoped to the simulator's own endpoints,
// customers and pages, shares its continuation tokens, and logs any data
// it changes in the same mutation log the chaos suite judges against. Each
// rule has a Scope (endpoint, customers, pages of the customer listing):
//
//   - MalformedRule: a 200 whose body is valid JSON but not what the
//     endpoint promises: null, {}, [], a string, a number, or a collection
//     whose items are missing, null, empty or an object while totalCount
//     says there are some (Shape* constants), in turn per request;
//   - RedirectRule: 301/302/303/307/308 to the off-origin server or to the
//     same origin (a same-origin redirect is served normally);
//   - ErrorRule: a persistent 4xx/5xx, optionally with a huge Retry-After
//     and with the request's Authorization header echoed in the body;
//   - OversizedRule: one subscription's friendlyName or a custom field of
//     1.2 MB, changed on every poll (each change a logged mutation, Cause
//     "hostile"), so that its event exceeds NATS's 1 MiB max payload;
//   - EndlessPaging: a customer listing that never ends, each page linking
//     to the next with a new continuation token, with customers that do not
//     exist (new ids on every page) or one page repeated;
//   - DuplicateCustomer: one customer listed twice, on different pages,
//     identical or not;
//   - SlowRule: a body trickled in small chunks, or one that never ends;
//   - AuditNoise: audit records pages that also carry a record for a
//     customer that does not exist and one of an undocumented operation
//     type (not in the activity log; they change nothing).
//
// Malformed, redirect, error and slow rules apply to the activity log
// with Scope.Endpoint EndpointAuditRecords.
//
// The off-origin server (OffOriginHandler; Run listens for it on a second
// port of the same host, SetOffOriginURL tells the simulator where) stands
// for another origin: it serves well-formed empty collections to anyone
// and counts the requests that carried an Authorization header
// (CurrentOffOriginStats, GET /admin/offorigin). A client that follows an
// off-origin redirect thus both leaks its token and, trusting the empty
// answer, would report false removals.
//
// The hostile mode is decided after the Faults: errors and redirects
// before authentication (an ErrorRule before a RedirectRule); then, for
// authorised requests, endless paging and the duplicate customer shape the
// listing, oversized changes are applied, a MalformedRule replaces the 200
// body, the Faults' malformed and truncated bodies apply, and a SlowRule
// delivers what is left. Hostile answers are counted in Stats.Faults under
// "hostile-..." kinds. With the zero Hostile the simulator serves exactly
// what it serves without it.
//
// # Admin API
//
// Under /admin/, without a bearer token (the chaos harness drives a
// cmd/pcsim process through it):
//
//	GET    /admin/state[?json=1]      State (StateWithJSON with json=1)
//	GET    /admin/mutations?since=N   mutations with Seq > N
//	POST   /admin/mutate              MutateRequest -> MutateResponse
//	POST   /admin/random              {"n": N} -> MutateResponse
//	GET    /admin/faults              the Faults in force
//	POST   /admin/faults              Faults ({} clears) -> the Faults in force
//	GET    /admin/hostile             the Hostile in force
//	POST   /admin/hostile             Hostile ({} turns hostile mode off) -> the Hostile in force;
//	                                  400 for an unknown endpoint, shape, mode or status
//	GET    /admin/offorigin           OffOriginStats (where the off-origin server listens, what it got)
//	DELETE /admin/offorigin           zero its counters
//	GET    /admin/audit               AuditStatus (configuration and counters)
//	POST   /admin/audit               AuditConfig ({} restores the default) -> AuditStatus; 400 if invalid
//	GET    /admin/audit/records?since=N  AuditLogEntry list (records with Seq > N, visible or not)
//	DELETE /admin/audit/records       drop every retained record
//	GET    /admin/webhooks            WebhookStatus (configuration, registration, counters)
//	POST   /admin/webhooks            WebhookConfig ({} restores the default) -> WebhookStatus; 400 if invalid
//	GET    /admin/webhooks/deliveries WebhookDelivery list (the last 1000 finished)
//	POST   /admin/inject              Rule
//	DELETE /admin/inject              empty the inject queue
//	GET    /admin/stats               Stats
//	DELETE /admin/stats               zero the counters
//	POST   /admin/advance             {"duration":"1h"} -> {"now","mutations"}; 409 unless the
//	                                  business clock is a *clock.Fake
//
// Durations in admin JSON are Go duration strings ("1.5s") or nanoseconds.
// Bad JSON, unknown properties, an unknown op or missing arguments answer
// 400 {"error": ...}; an unknown customer or subscription 404; an operation
// the rules refuse 409 {"error": ..., "code": 800090} (code when documented).
package pcsim
