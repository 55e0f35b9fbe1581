package twofactor

import (
	"fmt"

	"github.com/skip2/go-qrcode"
)

// QRModulePixels is the width and height in pixels of one QR code module
// in the images QRCodePNG makes. A typical key URI of some 130 bytes needs
// a version 8 symbol, 49 modules plus the quiet zone of 4 on each side:
// an image of 342 by 342 pixels.
const QRModulePixels = 6

// QRCodePNG renders uri as a black-on-white PNG QR code at the medium error
// correction level (about 15% of the symbol may be damaged). Every module
// is QRModulePixels whole pixels, so scanners see sharp edges, and the
// image keeps the white quiet zone of four modules that readers need around
// the symbol. It fails when uri is too long for a QR code.
func QRCodePNG(uri string) ([]byte, error) {
	code, err := qrcode.New(uri, qrcode.Medium)
	if err != nil {
		return nil, fmt.Errorf("qr code of %d-byte uri: %w", len(uri), err)
	}

	// A negative size asks go-qrcode for that many pixels per module
	// instead of a fixed image size, which would stretch modules unevenly.
	png, err := code.PNG(-QRModulePixels)
	if err != nil {
		return nil, fmt.Errorf("qr code png: %w", err)
	}
	return png, nil
}
