package calls

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/callgate/callgate/internal/httpapi"
)

func (h *Handler) saveCall(c echo.Context) error {
	body, ok, err := httpapi.ReadBody(c, h.cfg.MaxBody)
	if !ok {
		return err
	}
	u, code, err := decodeUpdate(body)
	if err != nil {
		return httpapi.Fail(c, http.StatusBadRequest, code, err.Error())
	}
	ctx := c.Request().Context()
	saved, err := h.save(ctx, u)
	if err != nil {
		return h.storeError(c, err)
	}
	if u.Status != "" {
		if err := h.publishStatus(ctx, saved.Call); err != nil {
			return h.storeError(c, err)
		}
	}
	status := http.StatusOK
	if saved.Created {
		status = http.StatusCreated
	}
	h.log.Info("call saved", "call_sid", saved.Call.CallSID, "conversation_id", saved.Call.ConversationID,
		"status", saved.Call.Status, "created", saved.Created, "linked", saved.Linked)
	return c.JSON(status, saved.Call)
}

func (h *Handler) getCall(c echo.Context) error {
	id, err := pathID(c)
	if err != nil {
		return httpapi.Fail(c, http.StatusBadRequest, CodeInvalidRequest, err.Error())
	}
	call, err := h.cfg.Store.Resolve(c.Request().Context(), id)
	if err != nil {
		return h.storeError(c, err)
	}
	return c.JSON(http.StatusOK, call)
}
