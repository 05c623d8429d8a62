package collector

import (
	"context"
	"time"
)

// SpendGroup is a dimension spend is grouped by.
type SpendGroup string

// Spend groups.
const (
	SpendByTenant SpendGroup = "tenant"
	SpendByRoute  SpendGroup = "route"
	SpendByModel  SpendGroup = "model"
)

// SpendGroups are the groups a report may ask for.
var SpendGroups = []SpendGroup{SpendByTenant, SpendByRoute, SpendByModel}

// SpendQuery asks for the spend of the requests that started in
// [From, To), grouped by one or more dimensions.
type SpendQuery struct {
	From, To time.Time
	GroupBy  []SpendGroup
}

// SpendRow is the spend of one group: its values, in GroupBy's order, its
// requests, their tokens by kind (see Usage), their cost, and how many
// had token counts but no price.
type SpendRow struct {
	Group                                           []string
	Requests                                        int64
	Input, Output, CacheRead, CacheWrite, Reasoning int64
	Cost                                            Money
	Unpriced                                        int64
}

// SpendReader reports spend.
type SpendReader interface {
	Spend(ctx context.Context, q SpendQuery) ([]SpendRow, error)
}
