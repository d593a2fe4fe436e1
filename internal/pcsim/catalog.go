package pcsim

import "strings"

// family is how a subscription behaves: which fields it renders and which
// lifecycle and operation rules apply.
type family uint8

const (
	famNCE         family = iota + 1 // OnlineServicesNCE license-based
	famSoftware                      // NCE Software (3-year)
	famLegacy                        // legacy license-based
	famLegacyAddon                   // legacy add-on of a legacy subscription
	famAzurePlan                     // Azure plan (usage-based)
	famSaaS                          // commercial-marketplace SaaS
)

// Kind classifies a subscription in State. The values are stable.
const (
	KindNCEMonthly      = "nce-monthly"      // OnlineServicesNCE, P1M
	KindNCEAnnual       = "nce-annual"       // OnlineServicesNCE, P1Y (or longer)
	KindNCESoftware     = "nce-software"     // Software, P3Y
	KindNCETrial        = "nce-trial"        // OnlineServicesNCE trial
	KindLegacyLicense   = "legacy-license"   // legacy license-based
	KindLegacyAddon     = "legacy-addon"     // legacy add-on
	KindAzurePlan       = "azure-plan"       // Azure plan
	KindMarketplaceSaaS = "marketplace-saas" // third-party SaaS
)

// AllKinds lists every Kind the generated dataset contains.
var AllKinds = []string{KindNCEMonthly, KindNCEAnnual, KindNCESoftware, KindNCETrial,
	KindLegacyLicense, KindLegacyAddon, KindAzurePlan, KindMarketplaceSaaS}

// offer is one catalog entry a subscription can be of. Offers are immutable
// and shared by every subscription of that offer.
type offer struct {
	id          string // the subscription's offerId
	productID   string
	skuID       string
	availID     string
	name        string
	fam         family
	trial       bool
	paid        *offer // for a trial: the paid availability it converts to
	productType *wireProductType
	unitType    string
	publisher   string
	microsoft   bool
	billingType string
	terms       []uint8 // allowed term lengths in months
	links       wireSubLinks
	description string
}

var (
	ptNCE      = &wireProductType{ID: "OnlineServicesNCE", DisplayName: "OnlineServicesNCE"}
	ptSoftware = &wireProductType{ID: "Software", DisplayName: "Software"}
	ptAzure    = &wireProductType{ID: "Azure", DisplayName: "Azure"}
)

func productLinks(o *offer) {
	o.links.Product = &wireLink{URI: "/products/" + o.productID + "?country=US", Method: "GET", Headers: noHeaders}
	o.links.Sku = &wireLink{URI: "/products/" + o.productID + "/skus/" + o.skuID + "?country=US", Method: "GET", Headers: noHeaders}
	if o.availID != "" {
		o.links.Availability = &wireLink{URI: "/products/" + o.productID + "/skus/" + o.skuID + "/availabilities/" + o.availID + "?country=US", Method: "GET", Headers: noHeaders}
	}
}

func nceOffer(fam family, prod, sku, avail, name, desc string, terms ...uint8) *offer {
	o := &offer{id: prod + ":" + sku + ":" + avail, productID: prod, skuID: sku, availID: avail, name: name,
		fam: fam, unitType: "Licenses", microsoft: true, billingType: "license", terms: terms, description: desc}
	switch fam {
	case famSoftware:
		o.productType, o.publisher = ptSoftware, "Microsoft"
	default:
		o.productType, o.publisher = ptNCE, "Microsoft Corporation"
	}
	productLinks(o)
	return o
}

func legacyOffer(fam family, guid, name string) *offer {
	o := &offer{id: guid, name: name, fam: fam, unitType: "Licenses", microsoft: true, billingType: "license", terms: []uint8{12}}
	o.links.Offer = &wireLink{URI: "/offers/" + guid + "?country=US", Method: "GET", Headers: noHeaders}
	return o
}

func saasOffer(prod, sku, avail, name, publisher string) *offer {
	o := &offer{id: prod + ":" + sku + ":" + avail, productID: prod, skuID: sku, availID: avail, name: name,
		fam: famSaaS, unitType: "License(s)", publisher: publisher, billingType: "license", terms: []uint8{1, 12}}
	productLinks(o)
	return o
}

var (
	nceOffers = []*offer{
		nceOffer(famNCE, "CFQ7TTC0LH18", "0001", "CFQ7TTC0P0WS", "Microsoft 365 Business Basic",
			"Best for businesses that need professional email, cloud file storage, and online meetings & chat.", 1, 12),
		nceOffer(famNCE, "CFQ7TTC0LDPB", "0001", "CFQ7TTC0K5QN", "Microsoft 365 Business Standard",
			"Everything in Business Basic, plus desktop versions of Office apps with premium features.", 1, 12),
		nceOffer(famNCE, "CFQ7TTC0LCHC", "0002", "CFQ7TTC0KTLS", "Microsoft 365 Business Premium",
			"Everything in Business Standard, plus advanced security and device management.", 1, 12),
		nceOffer(famNCE, "CFQ7TTC0LF8Q", "0001", "CFQ7TTC0M1X2", "Office 365 E3",
			"Productivity apps and cloud services for enterprises.", 1, 12),
		nceOffer(famNCE, "CFQ7TTC0LFLZ", "0001", "CFQ7TTC0L9JB", "Microsoft 365 E3",
			"Office 365 E3, Windows Enterprise and Enterprise Mobility + Security.", 1, 12),
		nceOffer(famNCE, "CFQ7TTC0LH16", "0001", "CFQ7TTC0QVQM", "Exchange Online (Plan 1)",
			"Business-class email and calendaring.", 1, 12),
		nceOffer(famNCE, "CFQ7TTC0LHXL", "0001", "CFQ7TTC0LFKT", "Microsoft Intune Plan 1",
			"Endpoint management for devices and apps.", 1, 12),
	}
	trialOffers = []*offer{
		trialOf(nceOffer(famNCE, "CFQ7TTC0LCHC", "0002", "CFQ7TTC0LF1R", "Microsoft 365 Business Premium Trial", "", 1), nceOffers[2]),
		trialOf(nceOffer(famNCE, "CFQ7TTC0LDPB", "0001", "CFQ7TTC0LDDQ", "Microsoft 365 Business Standard Trial", "", 1), nceOffers[1]),
		trialOf(nceOffer(famNCE, "CFQ7TTC0LFLZ", "0001", "CFQ7TTC0L3NH", "Microsoft 365 E3 Trial", "", 1), nceOffers[4]),
	}
	softwareOffers = []*offer{
		nceOffer(famSoftware, "DG7GMGF0FKZV", "0003", "DG7GMGF0DQLM", "SQL Server Enterprise - 2 Core License Pack - 3 year",
			"SQL Server Enterprise core licenses, 3-year subscription.", 36),
		nceOffer(famSoftware, "DG7GMGF0DVSV", "000P", "DG7GMGF0F3Q9", "Windows Server Remote Desktop Services CAL - 1 User CAL \u2013 3 year",
			"Remote Desktop Services user CAL, 3-year subscription.", 36),
		nceOffer(famSoftware, "DG7GMGF0D5RK", "0002", "DG7GMGF0F2ZC", "Windows Server Standard - 16 Core License Pack - 3 year",
			"Windows Server Standard core licenses, 3-year subscription.", 36),
	}
	legacyOffers = []*offer{
		legacyOffer(famLegacy, "796B6B5F-613C-4E24-A17C-EBA730D49C02", "Office 365 Enterprise E3"),
		legacyOffer(famLegacy, "031C9E47-4802-4248-838E-778FB1D2CC05", "Office 365 Business Premium"),
		legacyOffer(famLegacy, "195416C1-3447-423A-B37B-EE59A99A19C4", "Exchange Online (Plan 1)"),
		legacyOffer(famLegacy, "DB2E705F-B82A-4024-A3D5-D88E12F2DB35", "Intune Device"),
	}
	addonOffers = []*offer{
		legacyOffer(famLegacyAddon, "2828BE95-46BA-4F91-B2FD-0BEF192ECF60", "Exchange Online Archiving for Exchange Online"),
		legacyOffer(famLegacyAddon, "5B6E5C1C-6B0F-4A1B-9E4C-6A3D0D4B7A11", "Office 365 Advanced Threat Protection"),
	}
	azurePlanOffer = func() *offer {
		o := &offer{id: "DZH318Z0BPS6:0001", productID: "DZH318Z0BPS6", skuID: "0001", name: "Azure plan", fam: famAzurePlan,
			productType: ptAzure, unitType: "Usage-based", publisher: "Microsoft Corporation", microsoft: true,
			billingType: "usage", description: "Microsoft Azure plan (MS-AZR-0017G)"}
		productLinks(o)
		return o
	}()
	saasOffers = []*offer{
		saasOffer("DZH318Z0BXWC", "0001", "DZH318Z0BMJX", "Contoso Backup for Microsoft 365", "Contoso Software Inc."),
		saasOffer("DZH318Z0C2RV", "0002", "DZH318Z0BV01", "Fabrikam Secure Mail Gateway", "Fabrikam Cloud Ltd."),
		saasOffer("DZH318Z0D7M1", "0001", "DZH318Z0C9X4", "Litware Phone System Connector", "Litware, Inc."),
	}
	offerByID = func() map[string]*offer {
		m := map[string]*offer{}
		for _, list := range [][]*offer{nceOffers, trialOffers, softwareOffers, legacyOffers, addonOffers, saasOffers, {azurePlanOffer}} {
			for _, o := range list {
				m[strings.ToUpper(o.id)] = o
			}
		}
		return m
	}()
)

func trialOf(t, paid *offer) *offer {
	t.trial, t.paid = true, paid
	return t
}

// lookupOffer finds a catalog offer by offerId, case-insensitively.
func lookupOffer(id string) *offer { return offerByID[strings.ToUpper(id)] }

// resellers is the pool of indirect resellers' MPN ids.
var resellers = []string{"4847383", "5123456", "6234567"}

// companyNames are the fictitious companies customers are named after.
var companyNames = []string{"Contoso", "Fabrikam", "Wingtip Toys", "Fourth Coffee", "Tailspin Toys",
	"Northwind Traders", "Adventure Works", "Litware", "Proseware", "Woodgrove Bank", "Alpine Ski House",
	"Coho Winery", "Lamna Healthcare", "Trey Research", "Humongous Insurance", "Margie's Travel",
	"Relecloud", "VanArsdel", "Blue Yonder Airlines", "Lucerne Publishing", "Southridge Video",
	"Wide World Importers", "Datum Corporation", "Consolidated Messenger", "Graphic Design Institute",
	"Best For You Organics", "Munson's Pickles", "Fincher Architects", "City Power & Light", "Bellows College"}

// managedServiceDef is a service the partner can administer.
type managedServiceDef struct{ id, name, group string }

var managedServicePool = []managedServiceDef{
	{"Exchange", "Exchange", "Office"},
	{"MicrosoftCommunicationsOnline", "SkypeforBusiness", "Office"},
	{"SharePoint", "SharePoint", "Office"},
	{"Intune", "Intune", "Intune"},
	{"AzureActiveDirectory", "AzureActiveDirectory", "Azure"},
}

func managedServiceByID(id string) managedServiceDef {
	for _, d := range managedServicePool {
		if strings.EqualFold(d.id, id) {
			return d
		}
	}
	return managedServiceDef{id: id, name: id, group: "Office"}
}

// product is a catalog product shown by /products?targetView=.
type product struct {
	id, title, description, publisher string
	productType                       *wireProductType
	microsoft                         bool
}

func productFromOffer(o *offer) product {
	return product{id: o.productID, title: strings.TrimSuffix(o.name, " Trial"), description: o.description,
		publisher: o.publisher, productType: o.productType, microsoft: o.microsoft}
}

// forbiddenView is the target view that answers 403 (code 400036).
const forbiddenView = "azurereservationscosmosdb"

// productViews maps a lower-cased targetView to its products. Azure
// reservation products are rendered without productType.subType: the
// documentation shows subType as an object, which the partnercenter model
// does not decode (it declares a string).
var productViews = func() map[string][]product {
	var online, software []product
	seen := map[string]bool{}
	for _, o := range nceOffers {
		if !seen[o.productID] {
			seen[o.productID] = true
			online = append(online, productFromOffer(o))
		}
	}
	for _, o := range softwareOffers {
		software = append(software, productFromOffer(o))
	}
	azurePlan := productFromOffer(azurePlanOffer)
	azurePlan.title = "Azure plan"
	savings := product{id: "DZH318Z09V6F", title: "Azure savings plan", publisher: "Microsoft Corporation", productType: ptAzure, microsoft: true,
		description: "Flexible pricing model offering lower prices compared to On-Demand pricing, in exchange for a specific usage commitment"}
	vm := product{id: "DZH318Z0BQ3Q", title: "Virtual Machines DSv2 Series", publisher: "Microsoft", productType: ptAzure, microsoft: true,
		description: "Dsv2-series instances are the latest generation of D-series instances."}
	sql := product{id: "DZH318Z0BQ5S", title: "SQL Database Single/Elastic Pool General Purpose - Compute Gen5", publisher: "Microsoft", productType: ptAzure, microsoft: true,
		description: "SQL Database reserved capacity."}
	legacyAzure := product{id: "MS-AZR-0145P", title: "Microsoft Azure", publisher: "Microsoft Corporation", microsoft: true,
		description: "Azure Cloud Solution Provider offer for Partner and Resellers"}
	var saas []product
	for _, o := range saasOffers {
		saas = append(saas, productFromOffer(o))
	}
	return map[string][]product{
		"azure":                 {azurePlan, savings},
		"microsoftazure":        {legacyAzure, azurePlan},
		"onlineservices":        online,
		"software":              software,
		"softwaresubscriptions": software,
		"azurereservations":     {vm, sql},
		"azurereservationsvm":   {vm},
		"azurereservationssql":  {sql},
		"saas":                  saas,
		forbiddenView:           nil,
	}
}()
